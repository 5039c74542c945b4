"""`xscore bench`: a load tester for rerank servers, xscore's and the peers' (TEI, infinity, vLLM,
Cohere/Jina-shaped), closed and open loop, with reports a person can read and plot."""
