"""robust-cifar10: the ``cifar10-resnet`` task (CIFAR-10, ResNet-18, 36 training variants)."""

__version__ = "0.1.0"
