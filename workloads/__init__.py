"""Programs that run inside corral allocations and follow its contract: read
``CUDA_VISIBLE_DEVICES`` and ``CORRAL_*`` from the environment, checkpoint to
``CORRAL_CHECKPOINT_DIR`` and on SIGTERM, resume from the newest checkpoint."""
