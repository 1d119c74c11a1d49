"""The paper's benchmark: every baseline and CultureManager on a tasks file (`culturemanager bench CONFIG.toml`).

    run.py     the phases: split, pipeline, train, evaluate, results     config.py  the [bench] config
    tasks.py   the tasks file and its labelled rows                      data.py    splits and training examples
    split.py   the seeded stratified protocol split                      score.py   metrics, pure functions
    report.py  report.md and plots, rendered from results.json
"""
