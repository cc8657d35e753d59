"""What is read back from finished runs: the leaderboard, one run's report, the transfer and UMSAB tables, the check
that a logged model reproduces its run (verify), and a headless browser for screenshots of the MLflow UI."""
