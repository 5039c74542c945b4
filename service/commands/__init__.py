"""One module per `xscore` subcommand."""
