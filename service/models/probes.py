"""The fixed probe set every export is checked on: >= 50 pairs of every kind users send.

Deterministic (no randomness), so parity figures are comparable across exports.
"""

from __future__ import annotations

_QUERIES = [
    "how do I reset my password",
    "capital of France",
    "python list comprehension with condition",
    "symptoms of vitamin D deficiency",
    "東京の天気",
    "como hacer pan casero",
    "why is the sky blue 🌤️",
    "Größe der Zugspitze",
]

_DOCUMENTS = [
    "To reset your password, open Settings, choose Security and click Reset Password.",
    "Paris is the capital and most populous city of France.",
    "[x for x in items if x > 0] builds a new list keeping only the positive items.",
    "Vitamin D deficiency can cause bone pain, muscle weakness, fatigue and mood changes.",
    "東京は明日晴れのち曇り、最高気温は十八度の予報です。",
    "Para hacer pan casero mezcla harina, agua, sal y levadura, amasa y deja reposar.",
    "Rayleigh scattering makes shorter blue wavelengths scatter more than red ones ☀️🌈.",
    "Die Zugspitze ist mit 2962 Metern der höchste Berg Deutschlands.",
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "The quarterly report shows revenue growth of 12% driven by cloud services.",
    "Ünïcödé tëxt wïth äccents, ligatures ﬁ ﬂ and symbols ∑ ∫ √ ≠.",
    "北京是中华人民共和国的首都，也是政治和文化中心。",
    "🚀🔥💯 emoji-only reactions 👍👍👍",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "",
]

_LONG = (
    "Cross-encoders read the query and the document together, so every layer can attend "
    "across both texts; this makes them slower than bi-encoders but more accurate rerankers. "
)


def probe_pairs() -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for index, query in enumerate(_QUERIES):
        # each query meets its own document, two others, and one long document
        for offset in (0, 3, 8):
            pairs.append((query, _DOCUMENTS[(index + offset) % len(_DOCUMENTS)]))
        pairs.append((query, _LONG * (1 + index)))
    pairs.append(("a", "b"))
    pairs.append(("over-long document", _LONG * 40))  # ~1000 tokens: truncated
    pairs.append((_LONG * 30, "over-long query"))  # the query itself over the cap
    pairs.append((_LONG * 20, _LONG * 25))  # both over: longest_first
    pairs.extend((doc[:40] or "empty document", doc) for doc in _DOCUMENTS)
    pairs.append(("code", "```python\nimport numpy as np\nnp.argsort(-scores)\n```"))
    pairs.append(("mixed 中文 English 日本語", "多语言 multilingual テキスト text"))
    return pairs
