"""Live sources: capture, a latest-wins model stage, several sinks (``vsr stream``)."""
