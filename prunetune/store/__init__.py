"""prunetune.store"""
