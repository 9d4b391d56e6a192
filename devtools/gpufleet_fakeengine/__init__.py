"""A stand-in for vLLM and SGLang that speaks their HTTP surface, for the node agent's tests."""
