"""What a person runs: ``detect`` on files, the camera gateway (``watch``), Triton serving, the
doctor, fp16 conversion and the engine check. Built from the layers below; no app imports another
app's internals except the gateway's through its public pieces."""
