"""prunetune.workers"""
