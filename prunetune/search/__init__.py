"""prunetune.search"""
