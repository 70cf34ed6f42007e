"""`slimserve serve`: an OpenAI-compatible server for catalog variants.

Three layers, each testable alone: ``protocol`` (wire models and errors), ``scheduler`` (bounded queue, batching,
cancellation) and ``engines`` (one decode loop per runtime; tokens and sampling settings in, tokens out). ``app``
wires them into FastAPI, ``metrics`` holds the Prometheus counters, ``server`` the config, loading and shutdown, ``run`` binds the socket and starts uvicorn.
``slimserve.served`` keeps the catalog's records of live servers (a layer below, so exports can read them).
"""
