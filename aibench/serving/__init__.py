"""Serving over HTTP: an OpenAI-compatible server around aibench's engine, and the benchmark client
that drives any OpenAI-compatible endpoint (aibench's, vLLM's, SGLang's) with vLLM `bench serve`'s
arrivals and metrics. Nothing here imports click; aiohttp is imported by the modules that speak HTTP."""
