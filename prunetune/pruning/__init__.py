"""prunetune.pruning"""
