"""Method-level helpers of the debiasing zoo that are not objectives: implicit demography inference (IDI,
Lin, Chou, Lee 2025) and the linear gender probe used to evaluate gender removal (CFA, adversarial)."""

from fairser.methods.idi import (
    GROUP_INFERENCE,
    F0Encoder,
    InferredGender,
    gender_agreement,
    infer_gender,
    infer_gender_classifier,
    infer_gender_f0,
    infer_gender_kmeans,
    speaker_keys,
    utterance_f0,
)
from fairser.methods.probe import ProbeResult, gender_probe

__all__ = [
    "GROUP_INFERENCE",
    "F0Encoder",
    "InferredGender",
    "ProbeResult",
    "gender_agreement",
    "gender_probe",
    "infer_gender",
    "infer_gender_classifier",
    "infer_gender_f0",
    "infer_gender_kmeans",
    "speaker_keys",
    "utterance_f0",
]
