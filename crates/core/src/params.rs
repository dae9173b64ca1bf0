//! Parameters of a burn module as the optimizer sees them: a stable dotted path, a kind, a shape,
//! and flat (rank-1) value and gradient tensors.
//!
//! [`describe`], [`gather`] and [`scatter`] all walk the module in the same order (burn's derive
//! visits fields in declaration order) and consider only trainable parameters (those that require
//! gradients; batch-norm running statistics are not).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};
use serde::{Deserialize, Serialize};

/// What a parameter is, derived from its module and name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKind {
    /// A weight matrix or kernel of a dense, convolution or embedding layer.
    Weight,
    /// The additive bias of a dense or convolution layer.
    Bias,
    /// A scale or shift of a normalisation layer (batch norm, layer norm).
    Norm,
}

/// A trainable parameter's identity.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Dotted path, e.g. `layer1.0.bn3.gamma`.
    pub path: String,
    pub kind: ParamKind,
    pub shape: Vec<usize>,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parameter's current value and gradient, flattened, without autodiff.
#[derive(Clone, Debug)]
pub struct ParamSlot {
    pub value: Tensor<1>,
    pub grad: Tensor<1>,
}

#[derive(Default)]
struct PathTracker {
    names: Vec<String>,
    containers: Vec<String>,
}

impl PathTracker {
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }
    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }
    fn path(&self) -> String {
        self.names.join(".")
    }
    /// Kind from the module that owns the parameter (the container of the last field entered).
    fn kind(&self) -> ParamKind {
        let owner = self.containers.last().map(String::as_str).unwrap_or("");
        let name = self.names.last().map(String::as_str).unwrap_or("");
        if owner.contains("Norm") {
            ParamKind::Norm
        } else if name == "bias" {
            ParamKind::Bias
        } else {
            ParamKind::Weight
        }
    }
}

struct Describer {
    tracker: PathTracker,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for Describer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.out.push(ParamInfo {
                path: self.tracker.path(),
                kind: self.tracker.kind(),
                shape: param.lazy_shape().to_vec(),
            });
        }
    }
}

/// The trainable parameters of `module`, in visiting order.
pub fn describe<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut d = Describer {
        tracker: PathTracker::default(),
        out: Vec::new(),
    };
    module.visit(&mut d);
    d.out
}

struct Gatherer<'a> {
    grads: &'a Gradients,
    out: Vec<ParamSlot>,
}

impl ModuleVisitor for Gatherer<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        let value = param.val();
        let n = value.shape().num_elements();
        let grad = match value.grad(self.grads) {
            Some(g) => g.reshape([n]),
            // A parameter the loss does not depend on has a zero gradient.
            None => Tensor::zeros([n], &value.device().inner()),
        };
        self.out.push(ParamSlot {
            value: value.inner().reshape([n]),
            grad,
        });
    }
}

/// Flat values and gradients of the trainable parameters, in [`describe`] order.
pub fn gather<M: Module>(module: &M, grads: &Gradients) -> Vec<ParamSlot> {
    let mut g = Gatherer {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut g);
    g.out
}

struct Valuer {
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for Valuer {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            let value = param.val();
            let n = value.shape().num_elements();
            self.out.push(value.inner().reshape([n]));
        }
    }
}

/// Flat values (without autodiff) of the trainable parameters, in [`describe`] order.
pub fn values<M: Module>(module: &M) -> Vec<Tensor<1>> {
    let mut v = Valuer { out: Vec::new() };
    module.visit(&mut v);
    v.out
}

struct Scatterer {
    values: std::vec::IntoIter<Tensor<1>>,
}

impl ModuleMapper for Scatterer {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !param.is_require_grad() {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let flat = self
            .values
            .next()
            .expect("scatter: one value per trainable parameter");
        let mut updated: Tensor<D> = flat.reshape(shape);
        if tensor.is_autodiff() {
            updated = Tensor::from_inner(updated);
        }
        Param::from_mapped_value(id, updated.require_grad(), mapper)
    }
}

/// Writes new flat values (in [`describe`] order) into the trainable parameters of `module`.
pub fn scatter<M: Module>(module: M, values: Vec<Tensor<1>>) -> M {
    let mut s = Scatterer {
        values: values.into_iter(),
    };
    let out = module.map(&mut s);
    assert!(
        s.values.next().is_none(),
        "scatter: more values than trainable parameters"
    );
    out
}
