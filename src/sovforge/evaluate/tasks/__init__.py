"""lm-eval task YAML templates for `sovforge evaluate make-tasks CORPUS --out DIR`."""
