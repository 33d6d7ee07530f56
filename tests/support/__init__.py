"""What several test modules share: tiny inputs written in the documented layouts, and the
real pipeline and command line driven as subprocesses. Test modules hold tests only."""
