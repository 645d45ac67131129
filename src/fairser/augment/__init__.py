"""Data augmentation for debiasing (CO-VADA's voice conversion, Tsai, Lin, Chou, Lee 2025)."""

from fairser.augment.covada import (
    FEMALE_TO_MALE,
    MALE_TO_FEMALE,
    ConvertedAudio,
    VoiceShift,
    change_gender,
    convert_voices,
    median_f0,
    select_bias_guiding,
)

__all__ = [
    "FEMALE_TO_MALE",
    "MALE_TO_FEMALE",
    "ConvertedAudio",
    "VoiceShift",
    "change_gender",
    "convert_voices",
    "median_f0",
    "select_bias_guiding",
]
