import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine is shared: one torch thread is faster and deterministic under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
