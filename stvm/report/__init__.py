"""The report stage: tables and figures from the files the stages wrote (it loads no model)."""
