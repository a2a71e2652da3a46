def configure_parser(p): return p
def run_from_args(a): raise NotImplementedError
