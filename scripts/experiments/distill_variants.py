#!/usr/bin/env python3
"""Development experiment behind quantizer/src/distill.rs: which student
best reproduces an EASE teacher at 64 dimensions on ML-1M (recbole split)?

Usage: vitrine-train ... --algo ease --protocol recbole --dump-split DIR
       python scripts/experiments/distill_variants.py DIR
Needs numpy, pandas, scipy, implicit (target/bench-venv has them).
Prints NDCG@10 of: the teacher; rank-64 SVD of B; rank-64 SVD of the
teacher's score matrix S (exact and randomised, with and without the seen
items masked out of the soft labels); ALS fitted to each user's top-M
teacher scores.
"""
import numpy as np, pandas as pd, sys, scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
d=sys.argv[1].rstrip('/')+'/'
tr=pd.read_csv(d+'train.tsv',sep='\t',header=None,names=['u','i','r'])
va=pd.read_csv(d+'valid.tsv',sep='\t',header=None,names=['u','i','r'])
te=pd.read_csv(d+'test.tsv',sep='\t',header=None,names=['u','i','r'])
users=np.unique(np.concatenate([tr.u,va.u,te.u])); items=np.unique(np.concatenate([tr.i,va.i,te.i]))
um={u:k for k,u in enumerate(users)}; im={i:k for k,i in enumerate(items)}
def mat(df):
    X=np.zeros((len(users),len(items)),dtype=np.float64)
    X[df.u.map(um).values, df.i.map(im).values]=1; return X
Xtr,Xva,Xte=mat(tr),mat(va),mat(te)
disc=1/np.log2(np.arange(2,12))
def ndcg(S,k=10):
    S=S.copy(); S[(Xtr+Xva)>0]=-np.inf
    top=np.argpartition(-S,k,axis=1)[:,:k]
    o=np.take_along_axis(S,top,1).argsort(1)[:,::-1]; top=np.take_along_axis(top,o,1)
    hits=np.take_along_axis(Xte,top,1)
    dcg=(hits*disc).sum(1); n=Xte.sum(1); idcg=np.array([disc[:min(int(x),k)].sum() for x in n])
    ok=n>0
    return (dcg[ok]/idcg[ok]).mean()
G=Xtr.T@Xtr; G[np.diag_indices_from(G)]+=800; P=np.linalg.inv(G); B=-P/np.diag(P); np.fill_diagonal(B,0)
S=Xtr@B
print('teacher',ndcg(S),flush=True)
D=64
# 1) low-rank B: B ~ P Q^T  (user factor = x_u P)
U,s,Vt=np.linalg.svd(B); 
Bl=(U[:,:D]*s[:D])@Vt[:D]; print('lowrank B', ndcg(Xtr@Bl),flush=True)
# 2) truncated SVD of S
U2,s2,Vt2=np.linalg.svd(S,full_matrices=False); print('svd S', ndcg((U2[:,:D]*s2[:D])@Vt2[:D]),flush=True)
# 3) ALS on teacher top-M soft labels
for M in [50,200]:
  for alpha in [1.0, 10.0]:
    Sm=S.copy(); thr=-np.partition(-Sm,M,axis=1)[:,M:M+1]; Sm[Sm<thr]=0; Sm=np.maximum(Sm,0); Sm=Sm/ (Sm.max(1,keepdims=True)+1e-9)
    C=sp.csr_matrix(Sm.astype(np.float32)+Xtr.astype(np.float32))
    m=AlternatingLeastSquares(factors=D,regularization=0.5,alpha=alpha,iterations=15,random_state=1,num_threads=2)
    m.fit(C,show_progress=False)
    print('als soft M',M,'alpha',alpha, ndcg(m.user_factors@m.item_factors.T),flush=True)

def rsvd(S,D,p=10,q=3,seed=0):
    rng=np.random.default_rng(seed); Y=S@rng.standard_normal((S.shape[1],D+p))
    for _ in range(q):
        Y,_=np.linalg.qr(Y); Y=S@(S.T@Y)
    Q,_=np.linalg.qr(Y); Bs=Q.T@S; u,s,vt=np.linalg.svd(Bs,full_matrices=False)
    return (Q@u[:,:D])*s[:D], vt[:D]
for hist,name in [(Xtr,'train'),(Xtr+Xva,'train+valid')]:
    S=hist@B
    print(name,'teacher',round(ndcg(S),4),flush=True)
    Uf,V=rsvd(S,64); print(name,'rsvd S',round(ndcg(Uf@V),4),flush=True)
    Sm=S*(1-hist); Uf,V=rsvd(Sm,64); print(name,'rsvd S masked',round(ndcg(Uf@V),4),flush=True)
    Sp=np.maximum(Sm,0); Uf,V=rsvd(Sp,64); print(name,'rsvd S masked relu',round(ndcg(Uf@V),4),flush=True)
