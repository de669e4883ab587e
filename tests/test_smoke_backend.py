import numpy as np

import seqnet
from conftest import assert_close


def test_lstm_runs_on_backend(xb):
    lstm = seqnet.LSTM(3, 4, seed=0)
    x = xb.asarray(np.ones((2, 1, 3)), "float32")
    out, (h_n, c_n) = lstm(x)
    assert_close(xb, h_n[0, ...], out[-1, ...])
