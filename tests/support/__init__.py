"""What every test layer shares: job and spec factories, cluster helpers and waits, the
install helpers, a package index, and the session's tools. No test module imports another."""
