"""Image generation: stable-diffusion.cpp in supervised worker processes (see `workers/`).

    setup.py    Settings → ImageSetup: model files, limits, opt-in features (checked at start-up)
    lora.py     the closed set of LoRA aliases, and the start-up check that each fits the model
    params.py   the request model shared by the routes and `chimera sd` (coercion, validation)
    pool.py     ImagePool: the `chimera _sd-worker` processes, and request → worker job
    worker.py   the worker process: one stable-diffusion context, one request at a time
    cli.py      `chimera sd`
"""
