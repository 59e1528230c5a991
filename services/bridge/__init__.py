"""The bridge service: hosted image and vision APIs behind explicit provider chains.

settings.py    BridgeSettings (env prefix TILESMITH_BRIDGE_; keys from FAL_KEY, ZAI_API_KEY, ...)
_http.py       one HTTP call to a provider: retries (tenacity), Retry-After, key scrubbing, downloads
providers.py   one adapter per API: fal.ai queue, OpenAI-compatible vision chat, Replicate, OpenRouter
circuit.py     a circuit breaker per provider
chains.py      runs a request down a provider chain and records every attempt
prompts.py     prompt building (trigger words, physical attributes) and the analysis instruction
references.py  validation and temporary storage of reference images
servicer.py    the gRPC servicer (thin), app.py the server, __main__.py `python -m services.bridge`
"""
