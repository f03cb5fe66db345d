"""Writes the test fixtures of `darts_train.py --import-weights` (tests/fixtures/import/): small networks of each
kind built, initialised and saved by quark0/darts' own code, with their eval-mode outputs on a fixed input.
Not part of the tests: it needs torch, which the project's venv does not have; the tests read its files
without torch (ops/torch_checkpoint.py).

    uv venv /tmp/torchenv && uv pip install --python /tmp/torchenv/bin/python torch numpy   # a cpu torch
    /tmp/torchenv/bin/python bench/make_import_fixtures.py --darts /tmp/quark0    # its cnn/ and rnn/ folders

Per network, two checkpoints: the zip format of torch >= 1.6 and the legacy format of the released files
(`_use_new_zipfile_serialization=False`), each gzipped (the tests unpack them). The CNNs are saved as
their training scripts save them: cifar as the state dict of utils.save, imagenet as train_imagenet.py's
{'epoch', 'state_dict', 'best_acc_top1', 'optimizer'} dict; the language model whole, as rnn/train.py saves it.

- cifar: NetworkCIFAR(C=4, 10 classes, 4 cells, auxiliary, DARTS_V2), input 2 x 3 x 32 x 32;
- imagenet: NetworkImageNet(C=8, 10 classes, 4 cells, auxiliary, DARTS_V2), input 2 x 3 x 224 x 224
  (its AvgPool2d(7) needs 224);
- ptb: RNNModel(30 words, ninp = nhid = 16, DARTS_V2), 5 x 2 tokens, zero hidden state.

Every weight is the original's initialisation except what would leave a mapping untested: the batch
norms' scales, shifts and running statistics, and the decoder's bias, are drawn at random; and what would
make the files large: the auxiliary heads (1.6 MB of weights, most in the 128 -> 768 2x2 convolution) keep
a few of their weights (sparse_aux_head), and every value is rounded to a multiple of 1/256 (coarse).
<name>_expected.npz holds the eval-mode logits (ptb: log-probabilities,
the cell's outputs and last hidden state), and for the CNNs the auxiliary head's input (the output of cell
2n//3) and its eval-mode logits, which the main logits never see.
"""
import argparse
import gzip
import os
import subprocess
import sys
import types

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "import")
FORMATS = {"zip": True, "legacy": False}  # _use_new_zipfile_serialization


def fixed_input(shape):
    """Inputs in [-1, 1) from integer hashing: the tests compute the same array exactly, without storing it."""
    n = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((n * 2654435761) % 1000) / 500.0 - 1.0).astype(np.float32).reshape(shape)


def fixed_tokens(shape, ntoken):
    n = np.arange(int(np.prod(shape)), dtype=np.int64)
    return ((n * 2654435761) % ntoken).reshape(shape)


def patch_torch(torch):
    """The originals call .cuda() everywhere; on cpu it must do nothing. cnn/utils.py imports torchvision for
    its data transforms only, which building and saving a network never uses."""
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    for name in ("torchvision", "torchvision.transforms", "torchvision.datasets"):
        sys.modules.setdefault(name, types.ModuleType(name))


def save_both(torch, obj, name):
    for fmt, zipped in FORMATS.items():
        path = os.path.join(OUT, f"{name}_{fmt}.pt.gz")
        temporary = path[:-3]
        torch.save(obj, temporary, _use_new_zipfile_serialization=zipped)
        with open(temporary, "rb") as raw, gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as packed:
            packed.write(raw.read())
        os.remove(temporary)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def randomise_batch_norms(torch, model, generator):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            with torch.no_grad():
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))


def sparse_aux_head(torch, head, generator):
    """The head's three weight matrices (393,216 + 128 C + 7,680 weights) keep one weight in a thousand, in
    eight, in eight, scaled up so that the features stay lively: the layouts are still tested, in far fewer bytes."""
    for layer, keep in ((head.features[5], 1e-3), (head.features[2], 0.125), (head.classifier, 0.125)):
        with torch.no_grad():
            kept = torch.rand(layer.weight.shape, generator=generator) < keep
            # where, not a product: -0.0 has a bit set, and a million of them do not compress
            layer.weight.copy_(torch.where(kept, layer.weight / keep ** 0.5, torch.zeros_like(layer.weight)))


def coarse(torch, model):
    """Every value rounded to a multiple of 1/256 (exact in float32), so that the files compress."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.round(tensor * 256) / 256)


def make_cnn(darts):
    import torch
    patch_torch(torch)
    sys.path.insert(0, os.path.join(darts, "cnn"))
    from genotypes import DARTS_V2
    from model import NetworkCIFAR, NetworkImageNet

    for name, network, channels, size in (("cifar", NetworkCIFAR, 4, 32), ("imagenet", NetworkImageNet, 8, 224)):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        layers = 4
        model = network(channels, 10, layers, True, DARTS_V2)
        randomise_batch_norms(torch, model, generator)
        sparse_aux_head(torch, model.auxiliary_head, generator)
        coarse(torch, model)
        model.drop_path_prob = 0.0
        model.eval()
        captured = {}
        model.cells[2 * layers // 3].register_forward_hook(lambda m, i, out: captured.update(aux_input=out))
        x = torch.from_numpy(fixed_input((2, 3, size, size)))
        with torch.no_grad():
            logits, _ = model(x)
            aux_logits = model.auxiliary_head(captured["aux_input"])
        np.savez_compressed(os.path.join(OUT, f"{name}_expected.npz"), logits=logits.numpy(),
                            aux_input=captured["aux_input"].numpy(), aux_logits=aux_logits.numpy(),
                            channels=channels, layers=layers, image_size=size)
        if name == "cifar":
            save_both(torch, model.state_dict(), name)  # cnn/utils.py save()
        else:  # cnn/train_imagenet.py's save_checkpoint
            optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
            save_both(torch, {"epoch": 1, "state_dict": model.state_dict(), "best_acc_top1": 0.0,
                              "optimizer": optimizer.state_dict()}, name)


def make_rnn(darts):
    import torch
    patch_torch(torch)
    sys.path.insert(0, os.path.join(darts, "rnn"))
    import model as rnn_model
    from genotypes import DARTS_V2

    def embedding_lookup(embed, words, dropout=0.1, scale=None):
        # rnn/utils.py's embedded_dropout calls embed._backend, gone from torch; without dropout (eval) it is this
        assert not dropout and scale is None
        return torch.nn.functional.embedding(words, embed.weight)
    rnn_model.embedded_dropout = embedding_lookup

    torch.manual_seed(0)
    ntoken, nhid, steps, batch = 30, 16, 5, 2
    model = rnn_model.RNNModel(ntoken, nhid, nhid, nhid, 0.75, 0.25, 0.75, 0.2, 0.1, genotype=DARTS_V2)
    with torch.no_grad():
        model.decoder.bias.copy_(0.3 * torch.randn(ntoken, generator=torch.Generator().manual_seed(1)))
    coarse(torch, model)
    model.eval()
    tokens = torch.from_numpy(fixed_tokens((steps, batch), ntoken))
    hidden = model.init_hidden(batch)
    with torch.no_grad():
        log_prob, last_hidden, raw_outputs, _ = model(tokens, hidden, return_h=True)
    np.savez_compressed(os.path.join(OUT, "ptb_expected.npz"), log_prob=log_prob.numpy(),
                        raw_output=raw_outputs[0].numpy(), last_hidden=last_hidden[0][0].numpy(),
                        tokens=tokens.numpy(), ntoken=ntoken, nhid=nhid)
    save_both(torch, model, "ptb")  # rnn/train.py: torch.save(model, ...)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--darts", required=True, help="a quark0/darts checkout (its cnn/ and rnn/ folders)")
    parser.add_argument("--part", choices=["all", "cnn", "rnn"], default="all",
                        help="cnn/ and rnn/ both have a model.py: each part runs in a process of its own")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.part == "all":
        for part in ("cnn", "rnn"):
            subprocess.run([sys.executable, __file__, "--darts", args.darts, "--part", part], check=True)
    else:
        {"cnn": make_cnn, "rnn": make_rnn}[args.part](args.darts)


if __name__ == "__main__":
    main()
