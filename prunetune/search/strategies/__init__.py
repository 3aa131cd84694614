"""One module per search strategy; the registry lives in ``prunetune.search.registry``."""
