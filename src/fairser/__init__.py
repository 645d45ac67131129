"""fairser: measure and reduce gender bias in speech emotion recognition.

Built around the ERM-MinMaxGAP study (Pang, Gao, Kawahara, Chen, 2026): a multilingual, multimodal SER
benchmark reporting performance and male-female gaps per language and modality, and a training objective
that penalises the largest male-female loss gap over domains.
"""

__version__ = "0.1.0"
