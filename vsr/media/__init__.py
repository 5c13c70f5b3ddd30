"""Media input and output with PyAV: probe, threaded reader, writer, colour helpers."""
