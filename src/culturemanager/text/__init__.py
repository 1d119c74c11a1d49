"""The text helpers: what the prompts say, and how answers and input files are read. Pure functions and
constants, no model and no torch.

    prompts.py         the pipeline's prompts (queries, summaries, synthesis, the task template) and their parsers
    judge_prompts.py   the judges' prompts: the label check on samples, the answer judge of free-text answers
    router_prompts.py  the prompt router's templates
    formats.py         what differs between the four task formats: hints, examples, free-text answer checks
    answers.py         free-text answers scored against several accepted answers (exact and soft match)
    leakage.py         the one definition of a leak (equal once normalised, or a shared n-gram)
    datafiles.py       the user's demonstration, evaluation and prediction files (jsonl, json, csv, tsv, txt)
"""
