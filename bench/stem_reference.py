"""The stem measurement's reference side: timm's model, supervised on the
same image files with semiclass's default recipe (SGD-Nesterov lr 0.03,
momentum 0.9, weight decay 5e-4 on weights only, batch 64, 5% warm-up then
cosine, pad-crop + mirror), its stem ImageNet's or made compact as
semiclass's `stem: compact` does (no max pool / a stride-1 first conv).

usage: stem_reference.py DATASET MODEL imagenet|compact STEPS SIZE [SEED]
prints one line: MODEL STEM STEPS steps: SECONDSs val TOP1
"""
import sys, time, math, random, numpy as np, torch, torch.nn as nn, torch.nn.functional as F, timm
from PIL import Image
torch.set_num_threads(2)
root = sys.argv[1].rstrip('/') + '/'
arch, stem, steps, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
seed = int(sys.argv[6]) if len(sys.argv) > 6 else 0
torch.manual_seed(seed); random.seed(seed); np.random.seed(seed)
def load(lst):
    xs, ys = [], []
    for line in open(root + lst):
        p, y = line.split()
        im = Image.open(root + p).convert('RGB').resize((size, size), Image.BILINEAR)
        xs.append(np.asarray(im)); ys.append(int(y))
    return torch.tensor(np.stack(xs)).permute(0, 3, 1, 2).float().div(255), torch.tensor(ys)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1); std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
xtr, ytr = load('train.txt'); xva, yva = load('val.txt')
xtr = (xtr - mean) / std; xva = (xva - mean) / std
m = timm.create_model(arch, num_classes=10)
if stem == 'compact':
    if hasattr(m, 'maxpool'): m.maxpool = nn.Identity()
    else: m.conv_stem.stride = (1, 1)
decay = [p for n, p in m.named_parameters() if p.ndim > 1]; no = [p for n, p in m.named_parameters() if p.ndim <= 1]
opt = torch.optim.SGD([{'params': decay, 'weight_decay': 5e-4}, {'params': no, 'weight_decay': 0}], lr=0.03, momentum=0.9, nesterov=True)
warm = max(1, int(0.05 * steps))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
pad = size // 8
def aug(x):
    n = x.shape[0]
    x = F.pad(x, (pad,) * 4, mode='reflect')
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        a, b = random.randint(0, 2 * pad), random.randint(0, 2 * pad)
        o = x[i, :, a:a + size, b:b + size]
        out[i] = o.flip(-1) if random.random() < 0.5 else o
    return out
def evaluate():
    m.eval(); c = 0
    with torch.no_grad():
        for i in range(0, len(xva), 500): c += (m(xva[i:i + 500]).argmax(1) == yva[i:i + 500]).sum().item()
    m.train(); return 100 * c / len(xva)
t0 = time.time(); perm = []
for s in range(steps):
    if len(perm) < 64: perm += torch.randperm(len(xtr)).tolist()
    idx, perm = perm[:64], perm[64:]
    loss = F.cross_entropy(m(aug(xtr[idx])), ytr[idx])
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if (s + 1) % (steps // 4) == 0: print(f'step {s+1} loss {loss.item():.3f} val {evaluate():.2f} {64*(s+1)/(time.time()-t0):.0f} img/s', flush=True)
print(f'{arch} {stem} {steps} steps: {time.time()-t0:.0f}s val {evaluate():.2f}')
