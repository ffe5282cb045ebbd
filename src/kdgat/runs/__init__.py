"""Run directories: allocation, the files they hold, and finding completed runs."""
