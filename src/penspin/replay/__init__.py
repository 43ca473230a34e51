"""Step 3 of the real-world pipeline: replay the policy's targets open-loop on the hand and record
the successful runs to HDF5 ("replay data") for finetuning."""
