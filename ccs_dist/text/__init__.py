"""Description pools, their text embeddings and the FAISS index over them."""
