"""Teachers: the models that write synthetic data, behind one protocol."""
