"""The paper's benchmark: every baseline and CultureManager on a tasks file (`culturemanager bench CONFIG.toml`).

    run.py       runs the phases in order (entry point `bench`)      config.py  the [bench] config
    prepare.py   phases 1-2: the split, the pipeline's samples        tasks.py   the tasks file and its labelled rows
    train.py     phase 3: every method's adapters                     data.py    splits and training examples
    evaluate.py  phase 4: the routers and every variant's answers     methods.py the methods and their adapters
    judge.py     phase 4b: the LLM judge on free-text answers         routing.py both routers measured
    assemble.py  phase 5: results.json from the phases' records       results.py scores, intervals, comparisons
    report.py    report.md and plots, rendered from results.json      paper.py   the paper's numbers beside ours
    split.py     the seeded stratified protocol split                 score.py   metrics, pure functions
"""
