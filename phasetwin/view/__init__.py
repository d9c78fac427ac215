"""The operator's live web view (Bokeh server): ``phasetwin view RUN_FOLDER`` or ``--live mqtt://…``."""
