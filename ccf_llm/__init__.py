"""ccf-llm: CCF-LLM (collaborative cross-modal fusion in a causal LM) for CTR prediction, HF-native."""

from configuration_ccf import FUSIONS, CCFLLMConfig
from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

__all__ = ["FUSIONS", "CCFLLMConfig", "CCFLLMForCTR", "CCFLLMProcessor"]
__version__ = "0.1.0"
