"""The names of the files a run writes: every module that writes or reads one takes its name from here."""
