"""Test assets built on the fly (tiny random models, tokenizers, audio); nothing here is downloaded."""
