"""The model registry's file side: flavors, the artifact store, loaders and signatures."""
