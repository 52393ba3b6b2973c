def write_all(out, docs):
    pass
