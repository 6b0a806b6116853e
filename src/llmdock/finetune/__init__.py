"""Fine-tuning (issue 20): LoRA on the embedded model, merge, GGUF, quantize, re-evaluate."""
