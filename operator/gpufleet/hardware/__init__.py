"""The hardware layer shared by the operator and the node agent.

``report`` (what a machine has), ``catalog`` (which GPUs exist and how NVML/GFD name them),
``validation`` (may a GPU join), ``engine_select`` (vLLM or SGLang, and why), ``detect`` (NVML or a
recorded profile) and ``profiles`` (recorded machines). Import the submodules directly; this
package stays import-cheap for the CLI.
"""
