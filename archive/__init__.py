"""The archive domain: ingest, query, retrieve, and the index behind them."""
