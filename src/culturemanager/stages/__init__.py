"""The method's stages, one module each, in pipeline order. Each reads its inputs from the run directory and writes
its outputs there (`rundir.py` names the files), so any stage can be re-run alone:

    spec        the task spec: demonstrations per culture, evaluation inputs
    queries     the generator writes search queries per culture x task, task-specific and task-agnostic
    search      each query against the retriever, optionally summarized with citations
    synthesize  labeled samples in the task's format, deduplicated, checked against evaluation data; its optional
                checks on kept samples are two helpers of this stage, not stages: checks (the judge, and the
                order of the checks) and select (selection by culture over embeddings)
    train       one LoRA adapter per culture on the frozen target model
    route       the culture router: the embedding router fitted on each culture's examples, or the prompt router
                (router.json, router.npz)
    predict     route every input, answer with its culture's adapter (or its top routes' mixed), score against gold
                labels

`pipeline.py` runs them in order; `culturemanager <stage> CONFIG.toml` runs one.
"""
