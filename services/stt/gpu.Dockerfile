# The speech-to-text image for an NVIDIA GPU: the CPU image plus cuBLAS for CUDA 12 from
# PyPI. CTranslate2 4.8 loads libcublas.so.12 at run time and needs no cuDNN.
# Built by `make images-gpu` after the CPU image (voice-agent-stt:latest).
ARG BASE=voice-agent-stt:latest
FROM ${BASE}
USER root
RUN pip install --no-cache-dir nvidia-cublas-cu12==12.9.3.13
ENV LD_LIBRARY_PATH=/usr/local/lib/python3.11/site-packages/nvidia/cublas/lib \
    STT_DEVICE=cuda \
    STT_COMPUTE_TYPE=float16
USER app
