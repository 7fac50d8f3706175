"""rdro.llm.evaluation — AlpacaEval 2 (length-controlled) and BIG-Bench Hard evaluation of aligned models."""
