"""Where segscan runs: the local lab on one machine, and AWS."""
