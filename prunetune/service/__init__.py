"""prunetune.service"""
