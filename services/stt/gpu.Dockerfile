# The speech-to-text image for an NVIDIA GPU: the CPU image plus cuBLAS for CUDA 12 from
# PyPI. CTranslate2 4.8 loads libcublas.so.12 at run time and needs no cuDNN.
# Built by `make images-gpu` after the CPU image (voice-agent-stt:latest).
ARG BASE=voice-agent-stt:latest
FROM ${BASE}
USER root
# The wheel's library folder goes to the loader's search path, wherever pip put it.
RUN pip install --no-cache-dir nvidia-cublas-cu12==12.9.3.13 \
    && python -c "import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], 'lib'))" \
        > /etc/ld.so.conf.d/nvidia-cublas.conf \
    && ldconfig
ENV STT_DEVICE=cuda STT_COMPUTE_TYPE=float16
USER app
