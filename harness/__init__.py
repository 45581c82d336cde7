"""What the tests and the benchmarks share: the speech corpus and WER, recordings, the edge
client run on files, and stacks of real servers on free ports."""
