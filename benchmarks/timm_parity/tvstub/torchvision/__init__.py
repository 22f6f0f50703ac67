"""Stub: timm imports torchvision for data transforms and a FrozenBatchNorm2d only; no matching CPU wheel here."""
import sys, types, importlib.abc, importlib.machinery
class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"): raise AttributeError(name)
        return cls.__name__ + "." + name
class _Mod(types.ModuleType):
    __path__ = []
    def __getattr__(self, name):
        if name.startswith("__"): raise AttributeError(name)
        return _Meta(name, (), {"__init__": lambda self, *a, **k: None})
class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    def create_module(self, spec): return _Mod(spec.name)
    def exec_module(self, module): pass
sys.meta_path.insert(0, _Finder())
__version__ = "0.0-stub"
def __getattr__(name):
    return importlib.import_module("torchvision." + name)
